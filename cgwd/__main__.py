from cgwd.cli import main

raise SystemExit(main())
