"""Built-in event handlers that publish dispatches to an external system instead of running
bot logic in the worker (``shardmgr start --sink URL``)."""
