"""`python -m harivo.explorer ablation --mode alpha --out assets/ablation`: the ablation figure, no UI."""

from .ablation import main

raise SystemExit(main())
