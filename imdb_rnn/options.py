"""CLI options shared by several commands, declared once."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

DataDir = Annotated[
    Path,
    typer.Option("--data-dir", envvar="IMDB_RNN_DATA_DIR", help="Where the data set, NLTK data and preprocess artifacts live."),
]
ConfigPath = Annotated[Path, typer.Option("--config", "-c", help="YAML config, e.g. configs/quick.yaml.")]
Overrides = Annotated[
    Optional[list[str]],
    typer.Argument(help="Config overrides as section.key=value, e.g. train.epochs=3 model.cell=gru.", show_default=False),
]
Quiet = Annotated[bool, typer.Option("--quiet", "-q", help="No progress bars or per-epoch lines.")]
RunPath = Annotated[Path, typer.Option("--run", help="Run directory written by train, e.g. runs/quick.")]
Device = Annotated[Optional[str], typer.Option("--device", help="auto | cpu | cuda | cuda:N (default: the config's train.device).")]
LMDevice = Annotated[Optional[str], typer.Option("--device", help="auto | cpu | cuda | cuda:N (default: the config's pretrain.device).")]
ScoreDevice = Annotated[Optional[str], typer.Option("--device", help="auto | cpu | cuda | cuda:N (default: auto, a GPU when there is one).")]
Workers = Annotated[Optional[int], typer.Option("--workers", "-j", min=1, help="Preprocess processes (default: the cores available).")]
EvalWorkers = Annotated[Optional[int], typer.Option("--workers", "-j", min=1, help="Preprocess processes, when DATA_DIR has no artifacts for the run's config yet (default: the cores available).")]
LMWorkers = Annotated[Optional[int], typer.Option("--workers", "-j", min=1, help="Processes tokenizing the unlabelled reviews, the first time (default: the cores available).")]
Which = Annotated[str, typer.Option("--which", help="best | last checkpoint (best falls back to last without validation).")]
