"""`python -m pipeline.faces`: the face stage (`pipeline.faces.stage`)."""

from pipeline.common import run_main
from pipeline.faces.stage import main

run_main(main)
