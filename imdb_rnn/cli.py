"""The `imdb-rnn` command: thin typer wrappers that parse options and call plain functions."""

from __future__ import annotations

import functools
import json
import re
from pathlib import Path
from typing import Annotated, Callable, Optional

import typer

from imdb_rnn.errors import UserError
from imdb_rnn.options import (ConfigPath, DataDir, Device, EvalWorkers, LMDevice, LMWorkers, Overrides, Quiet,
                              RunPath, ScoreDevice, Which, Workers)

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="Train and evaluate recurrent networks for IMDB sentiment classification.")


def _err(text: str) -> None:
    typer.echo(text, err=True)


def user_errors(fn: Callable) -> Callable:
    """Turn a UserError into one line on stderr and exit status 2, and Ctrl-C (where a command does
    not handle it itself, as train and pretrain do) into one line and status 130."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except UserError as e:
            _err(f"error: {e}")
            raise typer.Exit(2) from None
        except KeyboardInterrupt:
            # Files are written under temporary names and renamed when complete (imdb_rnn.files).
            _err("interrupted (Ctrl-C): what was being written was not kept; run the command again (train and "
                 "pretrain: with --resume to continue from the last save)")
            raise typer.Exit(130) from None

    return wrapper


def _which(which: str) -> str:
    if which not in ("best", "last"):
        raise UserError(f"--which must be best or last, got '{which}'")
    return which


def _load(config: Path, overrides: Optional[list[str]], device: Optional[str] = None):
    from imdb_rnn.config import load_config

    extra = [f"train.device={device}"] if device else []
    return load_config(config, list(overrides or []) + extra)


@app.command()
@user_errors
def download(
    data_dir: DataDir = Path("data"),
    url: Annotated[Optional[str], typer.Option(help="Mirror URL or local path of aclImdb_v1.tar.gz.")] = None,
    sha256: Annotated[Optional[str], typer.Option(help="Expected sha256 (default: the official archive's).")] = None,
    hf: Annotated[bool, typer.Option("--hf", help="Instead of the archive, fetch stanfordnlp/imdb's Parquet files "
                                     "(train, test, unsupervised) from the Hugging Face Hub into DATA_DIR/imdb-hf/; "
                                     "then set data.source=imdb-hf.")] = False,
    hf_url: Annotated[Optional[str], typer.Option(
        "--hf-url", help="With --hf (implied): the base URL or local folder holding plain_text/*-00000-of-00001.parquet "
        "(default: the Hub at a pinned revision).")] = None,
    hf_sha256: Annotated[Optional[list[str]], typer.Option(
        "--hf-sha256", help="SPLIT=HEX: expected sha256 of one Parquet file (default: the pinned revision's); "
        "repeat per split.")] = None,
    force: Annotated[bool, typer.Option(help="Fetch again even if a verified copy is present.")] = False,
    skip_nltk: Annotated[bool, typer.Option("--skip-nltk", help="Do not fetch NLTK resources.")] = False,
    quiet: Quiet = False,
) -> None:
    """Fetch the IMDB archive (or with --hf its Parquet files), checksum-verified, and the NLTK resources that are missing."""
    from imdb_rnn.data import download as dl
    from imdb_rnn.progress import progress_bar

    hf = hf or hf_url is not None
    if hf and (url is not None or sha256 is not None):
        raise UserError("--url and --sha256 are the archive's; with --hf pass --hf-url and --hf-sha256 SPLIT=HEX")
    if hf_sha256 and not hf:
        raise UserError("--hf-sha256 applies to the Parquet files: add --hf (or --hf-url)")
    if sha256 is not None and not re.fullmatch(r"[0-9a-fA-F]{64}", sha256.strip()):
        raise UserError(f"--sha256 must be 64 hexadecimal digits, got '{sha256}'")
    sums = dl.parse_hf_sha256(hf_sha256 or []) if hf else {}
    jobs = [(split, f"download {split}") for split in dl.HF_IMDB_FILES] if hf else [(None, "download")]
    for split, desc in jobs:
        with progress_bar(None, desc, unit="B", enabled=not quiet) as bar:
            bar.unit_scale = True

            def progress(done: int, total: Optional[int]) -> None:
                bar.total = total
                bar.update(done - bar.n)

            if split is None:
                path, fetched = dl.download_imdb(data_dir, url or dl.IMDB_URL, (sha256 or dl.IMDB_SHA256).strip(), force,
                                                 progress)
            else:
                path, fetched = dl.download_hf_split(data_dir, split, hf_url or dl.HF_IMDB_URL, sums[split], force,
                                                     progress)
        typer.echo(f"{'downloaded' if fetched else 'already present'}: {path}")
    if hf:
        typer.echo(f"read it with data.source={dl.HF_IMDB_DIR}")
    if not skip_nltk:
        fetched_nltk = dl.ensure_nltk_resources()
        typer.echo(f"NLTK data: {'fetched ' + ', '.join(fetched_nltk) if fetched_nltk else 'all present'}")


@app.command("make-csv")
@user_errors
def make_csv(
    source: Annotated[Path, typer.Argument(help="aclImdb_v1.tar.gz or an extracted aclImdb/ directory.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="CSV to write.")] = Path("data/IMDB Dataset.csv"),
    seed: Annotated[int, typer.Option(help="Seed of the mixed row order.")] = 0,
) -> None:
    """Write the labelled reviews as a Kaggle-format CSV (review, sentiment), rows in a seeded mixed order."""
    from imdb_rnn.data.sources import ARCHIVE_FORMATS, detect_format, read_reviews, write_kaggle_csv

    if detect_format(source) not in ARCHIVE_FORMATS:
        raise UserError(f"{source} is not the archive; pass the tarball or an aclImdb/ directory")
    reviews = read_reviews(source)
    write_kaggle_csv(reviews, out, seed)
    typer.echo(f"wrote {len(reviews)} reviews to {out}")


@app.command()
@user_errors
def preprocess(config: ConfigPath, overrides: Overrides = None, data_dir: DataDir = Path("data"),
               workers: Workers = None, quiet: Quiet = False) -> None:
    """Tokenize, filter, build the vocabulary and pad into DATA_DIR/processed/NAME-KEY; a no-op when current."""
    from imdb_rnn.data.preprocess import preprocess as run

    cfg = _load(config, overrides)
    result = run(cfg, data_dir, workers=workers, show_progress=not quiet)
    m = result.manifest
    if result.cached:
        typer.echo(f"up to date: {result.out_dir} (same source and preprocess config; nothing to do)")
        return
    typer.echo(f"wrote {result.out_dir} in {m['seconds']}s with {m['workers']} worker(s)")
    for split, s in m["splits"].items():
        per_label = ", ".join(f"{name}: {n}" for name, n in s["classes"].items())
        typer.echo(f"  {split}: {s['reviews']} reviews ({per_label}), "
                   f"{s['tokens']} tokens, length {s['length']}, unknown rate {s['unknown_rate']}")
    typer.echo(f"  vocabulary {m['vocab_size']}, padded width {m['width']}, empty after filtering {m['empty_after_filtering']}"
               f" (dropped {m['empty_dropped']})")
    d = m["duplicates"]
    typer.echo(f"  duplicate texts: {d['within_train']} within train, {d['within_test']} within test, {d['test_in_train']} "
               f"test reviews also in train (dropped from train: {d['dropped_from_train']}; "
               "preprocess.drop_cross_split_duplicates)")


@app.command()
@user_errors
def train(config: ConfigPath, overrides: Overrides = None, data_dir: DataDir = Path("data"),
          run_dir: Annotated[Optional[Path], typer.Option("--run-dir", help="Default: runs/NAME.")] = None,
          overwrite: Annotated[bool, typer.Option(help="Replace a run already in the run directory.")] = False,
          resume: Annotated[bool, typer.Option(help="Continue the run in the run directory from model-last.pt.")] = False,
          auto_resume: Annotated[bool, typer.Option(
              "--auto-resume", help="Continue the run from model-last.pt when there is one, else start it: the same "
              "command for the first launch and for torchrun's restarts (--max-restarts).")] = False,
          device: Device = None, quiet: Quiet = False) -> None:
    """Train a model on preprocessed data; writes checkpoints, metrics and the resolved config."""
    from imdb_rnn.training.train import train as run

    if sum((resume, auto_resume, overwrite)) > 1:
        raise UserError("--resume and --auto-resume continue the run and --overwrite replaces it: pass one of them")
    cfg = _load(config, overrides, device)
    result = run(cfg, data_dir, run_dir, overwrite, show_progress=not quiet, log=(lambda *_: None) if quiet else typer.echo,
                 resume="auto" if auto_resume else resume)
    if result.interrupted:
        again = "the same command" if auto_resume else "the same command and --resume"
        _err(f"interrupted in {result.interrupted}; saved {result.best_path}; continue with {again}")
        raise typer.Exit(130)  # the shell's code for "stopped by Ctrl-C"; model-last.pt holds the run
    if result.is_main:
        typer.echo(f"run saved in {result.run_dir} (best: {result.best_path.name})")


@app.command()
@user_errors
def pretrain(config: ConfigPath, overrides: Overrides = None, data_dir: DataDir = Path("data"),
             run_dir: Annotated[Optional[Path], typer.Option("--run-dir", help="Default: runs/NAME-lm.")] = None,
             overwrite: Annotated[bool, typer.Option(help="Replace a run (a language model or a classifier) already in the run directory.")] = False,
             resume: Annotated[bool, typer.Option(help="Continue the pretrain run from lm-last.pt.")] = False,
             workers: LMWorkers = None, device: LMDevice = None, quiet: Quiet = False) -> None:
    """Pretrain the config's embedding and recurrent layers as a language model (truncated BPTT) on
    the unlabelled and training reviews; model.init_from then fine-tunes a classifier from it."""
    from imdb_rnn.pretrain.train import pretrain as run

    if resume and overwrite:
        raise UserError("--resume continues the run and --overwrite replaces it: pass one of them")
    cfg = _load(config, overrides)
    if device and cfg.pretrain is not None:
        cfg = cfg.model_copy(update={"pretrain": cfg.pretrain.model_copy(update={"device": device})})
    result = run(cfg, data_dir, run_dir, overwrite, resume, show_progress=not quiet,
                 log=(lambda *_: None) if quiet else typer.echo, workers=workers)
    if result.interrupted:
        _err(f"interrupted in {result.interrupted}; saved {result.run_dir / 'lm-last.pt'}; continue with the same "
             "command and --resume")
        raise typer.Exit(130)
    if result.is_main:
        typer.echo(f"language model saved in {result.run_dir}; fine-tune with model.init_from={result.run_dir}")


@app.command("eval")
@user_errors
def eval_(run: RunPath, split: Annotated[str, typer.Option(help="test | val | train (the reviews training fitted, val left out)")] = "test",
          data_dir: DataDir = Path("data"), which: Which = "best", device: ScoreDevice = None,
          as_json: Annotated[bool, typer.Option("--json", help="Print the metrics as one JSON line.")] = False,
          workers: EvalWorkers = None, quiet: Quiet = False) -> None:
    """Accuracy, precision, recall, F1, ROC-AUC and the confusion matrix; writes RUN/eval-SPLIT/.

    With more than two classes: per class, macro and weighted averages, ROC-AUC one-vs-rest.
    The split comes from DATA_DIR: the run's config preprocesses it there when needed.
    """
    from imdb_rnn.evaluate import evaluate, format_table
    from imdb_rnn.scoring import eval_warning

    result = evaluate(run, data_dir, split, _which(which), device or "auto", show_progress=not quiet, workers=workers)
    typer.echo(json.dumps(result) if as_json else format_table(result))
    for line in [*(f"note: {n}" for n in (result.get("note") or "").splitlines()), eval_warning(result)]:
        if line:
            _err(line)


@app.command()
@user_errors
def predict(run: Annotated[Optional[Path], typer.Option("--run", help="Run directory written by train, e.g. runs/quick.")] = None,
            texts: Annotated[Optional[list[str]], typer.Argument(help="Review text(s).", show_default=False)] = None,
            file: Annotated[Optional[Path], typer.Option("--file", "-f", help="One review per line, or a table (.csv, .tsv, .jsonl, .parquet) with a review or text column (the run's data.text_column when set).")] = None,
            which: Which = "best", device: ScoreDevice = None,
            onnx: Annotated[Optional[Path], typer.Option("--onnx", help="Instead of --run: a directory written by 'export --format onnx' (onnxruntime, no torch).")] = None,
            as_json: Annotated[bool, typer.Option("--json", help="JSON lines instead of a table.")] = False) -> None:
    """Label raw reviews with a trained run, through the run's own preprocessing and vocabulary (the run alone)."""
    # Torch-free with --onnx: nothing imported on that path loads torch (tests/test_onnx.py).
    from imdb_rnn.predict import format_predictions, input_text_column, read_texts

    if (run is None) == (onnx is None):
        raise UserError("pass either --run RUN (the trained run) or --onnx DIR (its ONNX export)")
    if onnx is not None and device:
        raise UserError("--device applies to --run; --onnx runs on onnxruntime's CPU provider")
    from_file = read_texts(file, input_text_column(run or onnx)) if file else []
    if file and not from_file:
        raise UserError(f"input file {file} holds no reviews (no non-blank line, or no CSV row)")
    items = list(texts or []) + from_file
    if onnx is not None:
        from imdb_rnn.export.runtime import predict_texts_onnx

        results = predict_texts_onnx(onnx, items)
    else:
        from imdb_rnn.predict import predict_texts

        results = predict_texts(run, items, _which(which), device or "auto")
    if as_json:
        for r in results:
            typer.echo(json.dumps(r, ensure_ascii=False))
    else:
        typer.echo(format_predictions(results))


@app.command()
@user_errors
def explain(run: RunPath, texts: Annotated[Optional[list[str]], typer.Argument(help="Review text(s).", show_default=False)] = None,
            file: Annotated[Optional[Path], typer.Option("--file", "-f", help="One review per line, or a table (.csv, .tsv, .jsonl, .parquet) with a review or text column (the run's data.text_column when set).")] = None,
            out: Annotated[Path, typer.Option("--out", "-o", help="HTML page to write.")] = Path("explanation.html"),
            steps: Annotated[int, typer.Option("--steps", min=1, help="Integrated-gradients steps (more: smaller integration error).")] = 50,
            top: Annotated[int, typer.Option("--top", min=0, help="Strongest tokens of each sign to print per review.")] = 5,
            which: Which = "best", device: ScoreDevice = None) -> None:
    """Why the run labels each review so: per-token attributions (integrated gradients), written as an HTML page."""
    from imdb_rnn.explain.html import render_page, write_page
    from imdb_rnn.explain.review import explain_texts, format_summary
    from imdb_rnn.predict import input_text_column, read_texts
    from imdb_rnn.run import RunDir

    from_file = read_texts(file, input_text_column(run)) if file else []
    if file and not from_file:
        raise UserError(f"input file {file} holds no reviews (no non-blank line, or no CSV row)")
    items = list(texts or []) + from_file
    which = _which(which)
    explanations = explain_texts(run, items, which, device or "auto", steps)
    checkpoint = RunDir(run).find_checkpoint(which).name
    write_page(out, render_page(explanations, run.resolve().name, checkpoint))
    typer.echo(format_summary(explanations, top))
    typer.echo(f"wrote {out}")


@app.command()
@user_errors
def export(run: RunPath,
           fmt: Annotated[str, typer.Option("--format", help="Export format: onnx.")] = "onnx",
           which: Which = "best",
           out: Annotated[Optional[Path], typer.Option("--out", "-o", help="Directory to write (default: RUN/onnx); an earlier export there is replaced.")] = None,
           data_dir: DataDir = Path("data"),
           check_reviews: Annotated[int, typer.Option("--check-reviews", min=2, help="Test reviews to compare onnxruntime with torch on.")] = 200) -> None:
    """Export a run's network to ONNX with everything a torch-free predictor needs, then check it against torch."""
    from imdb_rnn.export.onnx import export_run

    result = export_run(run, out, fmt, _which(which), data_dir, check_reviews, log=_err)
    diffs = ", ".join(f"{k} {v:.2g}" for k, v in result.check.max_abs_diff.items())
    typer.echo(f"wrote {result.out} ({', '.join(result.files)})")
    typer.echo(f"checked on {result.check.reviews} reviews of {result.check.shortest} to {result.check.longest} tokens: "
               f"largest |onnxruntime - torch| logit difference {diffs}")
    typer.echo(f"predict without torch: imdb-rnn predict --onnx {result.out} \"TEXT\"")


@app.command()
@user_errors
def report(
    run: Annotated[Optional[Path], typer.Argument(help="Run directory.")] = None,
    run_option: Annotated[Optional[Path], typer.Option("--run", help="Run directory (as eval and predict take it).")] = None,
) -> None:
    """Regenerate a run's figures (training curves, confusion matrices) and print its summary."""
    from imdb_rnn.report import report as run_report

    if run is not None and run_option is not None and run != run_option:
        raise UserError(f"two run directories given ({run} and --run {run_option}); give one")
    if run is None and run_option is None:
        raise UserError("no run directory given; e.g. imdb-rnn report runs/quick (or --run runs/quick)")
    typer.echo(run_report(run or run_option))


@app.command("grad-demo")
@user_errors
def grad_demo(
    steps: Annotated[int, typer.Option(min=1, help="Time steps to backpropagate through.")] = 20,
    seed: Annotated[int, typer.Option(help="Seed of W_h (3 reproduces the classic experiment).")] = 3,
    scale: Annotated[Optional[float], typer.Option(min=0.0, help="Rescale W_h to this largest singular value (>1 explodes, <1 vanishes).")] = None,
    clip: Annotated[Optional[float], typer.Option(min=0.0, help="Also show the norms with gradient clipping at this threshold.")] = None,
    imdb: Annotated[bool, typer.Option("--imdb", help="Measure rnn/gru/lstm gradients per time step on a real IMDB batch instead.")] = False,
    config: Annotated[Path, typer.Option("--config", "-c", help="With --imdb: the config whose preprocess artifacts to use.")] = Path("configs/quick.yaml"),
    overrides: Overrides = None,
    data_dir: DataDir = Path("data"),
    out: Annotated[Optional[Path], typer.Option("--out", "-o", help="PNG to write.")] = None,
) -> None:
    """Show why plain RNN gradients vanish or explode (prints the norms, saves a PNG)."""
    from imdb_rnn.reference import grad_demo as demo

    if not imdb:
        result = demo.backward_product(steps, seed=seed, scale=scale, clip=clip)
        typer.echo(f"W_h largest singular value {result['largest_singular_value']:.4f}")
        for t, norm in enumerate(result["norms"], 1):
            clipped = f"   clipped {result['clipped_norms'][t - 1]:.6g}" if result["clipped_norms"] else ""
            typer.echo(f"step {t:>3}  norm {norm:.6g}{clipped}")
        png = demo.plot_backward_product(result, out or Path("grad_demo.png"),
                                         f"dh <- dh W_h^T, largest singular value {result['largest_singular_value']:.2f}")
    else:
        profile, reviews = demo.imdb_batch_profile(_load(config, overrides), data_dir, steps)
        typer.echo(f"mean |dLoss/dx_t| over {reviews} reviews; t=0 is the first token, the loss reads t={steps - 1}")
        typer.echo("   t " + "".join(f"{name:>12}" for name in profile))
        for t in sorted({0, steps // 4, steps // 2, 3 * steps // 4, steps - 1}):
            typer.echo(f"{t:>4} " + "".join(f"{profile[name][t]:>12.3e}" for name in profile))
        png = demo.plot_profile(profile, out or Path("grad_demo_imdb.png"), f"gradient reaching each step ({steps} IMDB tokens)")
    typer.echo(f"wrote {png}")


def main() -> None:
    app()
