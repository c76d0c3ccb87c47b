from shardmgr.cli import main

raise SystemExit(main())
