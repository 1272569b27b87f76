"""`python -m harivo.train`: stage 2 (see `harivo.train.loop`)."""

from harivo.train.loop import main
from harivo.train.utils import run_cli

run_cli(main, "python -m harivo.train")
