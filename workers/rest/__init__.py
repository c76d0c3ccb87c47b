"""The REST client handler code uses from inside a worker (``gateway.rest``)."""
