"""The explanation page: one self-contained HTML file (inline CSS, no scripts, no external assets).

Per review: the run's final prediction and probability, how the branches' margins add up to it,
every token shaded by its integrated-gradients attribution to the RNN margin (green pushes
towards label 1, red towards label 0; with more than two classes, towards or away from the
predicted class), and the linear branches' strongest n-grams. All text is escaped with html.escape.
"""

from __future__ import annotations

from html import escape
from pathlib import Path
from typing import Optional, Sequence

from imdb_rnn.explain.attributions import Contribution
from imdb_rnn.explain.review import Explanation, reversed_rnn_note
from imdb_rnn.files import write_text

POSITIVE_RGB = (22, 150, 70)
NEGATIVE_RGB = (215, 40, 40)
MAX_ALPHA = 0.75  # the strongest token's shade; lighter keeps black text readable on it
TOP_NGRAMS = 8  # rows per sign in each linear branch's table

CSS = """
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; margin: 2em auto; max-width: 60em;
       color: #1a1a1a; line-height: 1.5; padding: 0 1em; }
h1 { font-size: 1.5em; margin-bottom: 0.2em; }
h2 { font-size: 1.15em; margin: 0 0 0.4em 0; }
h3 { font-size: 1em; margin: 0.6em 0 0 0; }
.grams p.sum { margin: 0 0 0.3em 0; }
.meta, .check, .sum { color: #555; font-size: 0.9em; }
.review { border: 1px solid #ddd; border-radius: 6px; padding: 1em 1.2em; margin: 1.2em 0; }
.label-pos { color: rgb(22, 120, 60); } .label-neg { color: rgb(180, 30, 30); }
.tokens { font-size: 1.05em; line-height: 2; margin: 0.6em 0; }
.t { padding: 0.1em 0.15em; border-radius: 3px; }
.cut { color: #999; font-style: italic; }
.unk { text-decoration: underline dotted; }
.legend { display: flex; align-items: center; gap: 0.6em; font-size: 0.9em; margin: 0.8em 0; flex-wrap: wrap; }
.bar { display: inline-block; width: 14em; height: 1em; border: 1px solid #ccc;
       background: linear-gradient(to right, rgba(215,40,40,0.75), rgba(255,255,255,0), rgba(22,150,70,0.75)); }
.grams { display: flex; gap: 2em; flex-wrap: wrap; }
table { border-collapse: collapse; font-size: 0.85em; }
th, td { padding: 0.1em 0.5em; text-align: left; }
td.v { text-align: right; font-variant-numeric: tabular-nums; }
.none { color: #777; font-style: italic; }
details { margin-top: 0.6em; font-size: 0.9em; color: #333; }
"""


def _shade(value: float, scale: float) -> str:
    """An inline background for `value` on a scale where `scale` is the strongest shade."""
    alpha = MAX_ALPHA * min(1.0, abs(value) / scale) if scale > 0 else 0.0
    r, g, b = POSITIVE_RGB if value > 0 else NEGATIVE_RGB
    return f"background: rgba({r}, {g}, {b}, {alpha:.3f})"


def _prob(p: float) -> str:
    """Three decimals, or six when three would round a confident prediction to 0 or 1."""
    return f"{p:.3f}" if 0.001 <= p <= 0.999 else f"{p:.6f}"


def _tokens(e: Explanation) -> str:
    scale = max((abs(s) for s in e.token_scores if s is not None), default=0.0)
    spans = []
    for token, score, unknown in zip(e.tokens, e.token_scores, e.unknown):
        classes = "t" + (" unk" if unknown else "")
        unk_note = f" (not in the vocabulary: read as {escape('<UNK>')})" if unknown else ""
        if score is None:
            spans.append(f'<span class="{classes} cut" title="not read by the RNN (cut by max_len){unk_note}">'
                         f"{escape(token)}</span>")
        else:
            spans.append(f'<span class="{classes}" style="{_shade(score, scale)}" title="{score:+.4f}{unk_note}">'
                         f"{escape(token)}</span>")
    return " ".join(spans)


def _ngram_table(title: str, items: Sequence[Contribution], note: str) -> str:
    """The strongest n-grams of each sign side by side: towards label 1 left, towards label 0 right."""
    pos = sorted((c for c in items if c.value > 0), key=lambda c: -c.value)[:TOP_NGRAMS]
    neg = sorted((c for c in items if c.value < 0), key=lambda c: c.value)[:TOP_NGRAMS]
    scale = max((abs(c.value) for c in pos + neg), default=0.0)

    def cells(c: Optional[Contribution]) -> str:
        if c is None:
            return "<td></td><td></td>"
        return f'<td style="{_shade(c.value, scale)}">{escape(c.text)}</td><td class="v">{c.value:+.3f}</td>'

    rows = "".join(f"<tr>{cells(pos[i] if i < len(pos) else None)}{cells(neg[i] if i < len(neg) else None)}</tr>"
                   for i in range(max(len(pos), len(neg))))
    return (f"<div><h3>{escape(title)}</h3><p class=\"sum\">{escape(note)}</p>"
            f"<table><tr><th>n-gram</th><th>margin</th><th>n-gram</th><th>margin</th></tr>{rows}</table></div>")


def _branch_sum(e: Explanation) -> str:
    """How the branches' margins make the final one: w_rnn * m_rnn + ... + intercept."""
    terms = [f"{e.weights[name]:.3f} × {name} ({m:+.3f})" if e.weights[name] != 1.0 else f"{name} ({m:+.3f})"
             for name, m in e.margins.items()]
    if e.intercept:
        terms.append(f"intercept ({e.intercept:+.3f})")
    total = sum(e.weights[n] * m for n, m in e.margins.items()) + e.intercept
    return f"margin ({_margin_words(e.labels, e.labels[e.target])}) = " + " + ".join(terms) + f" = {total:+.3f}"


def _margin_words(labels: Sequence[str], target: str) -> str:
    """What a margin is, in words: of `target` among the class names `labels`."""
    if len(labels) == 2:
        return f"log-odds of {target}"
    return f"logit of {target} minus the mean of the other classes' logits"


def _review(index: int, e: Explanation) -> str:
    head = f"Review {index}"
    if e.label is None:
        return (f'<section class="review"><h2>{head}: no prediction</h2><p class="none">{escape(e.note or "")}</p>'
                f"<details open><summary>Original text</summary><p>{escape(e.text)}</p></details></section>")
    css = "label-pos" if e.label == e.labels[e.target] else "label-neg"
    parts = [
        f'<section class="review"><h2>{head}: <span class="{css}">{escape(e.label)}</span>, '
        f"P({escape(e.labels[e.target])}) = {_prob(e.prob)}</h2>",
        f'<p class="sum">{escape(_branch_sum(e))}</p>',
        *([f'<p class="none">Note: {escape(reversed_rnn_note(e))}.</p>'] if reversed_rnn_note(e) else []),
        f'<div class="tokens">{_tokens(e)}</div>',
        f'<p class="check">RNN margin {e.rnn_margin:+.3f} − all-padding baseline {e.rnn_baseline_margin:+.3f} = '
        f"{e.rnn_margin - e.rnn_baseline_margin:+.3f}; the token attributions sum to "
        f"{sum(s for s in e.token_scores if s is not None):+.3f} (integration error {e.delta:+.1e}, "
        f"{e.steps} steps).</p>",
    ]
    tables = []
    if e.bag:
        tables.append(_ngram_table("N-gram bag branch", e.bag, f"exact shares of its margin {e.margins['ngram']:+.3f} "
                                   "(before stacking)"))
    if e.nbsvm:
        w = e.weights.get("nbsvm", 1.0)
        tables.append(_ngram_table("NBSVM branch", e.nbsvm, f"exact shares, times its stacking weight {w:.3f}; "
                                   f"intercept {e.nbsvm_intercept:+.3f}"))
    if tables:
        parts.append(f'<div class="grams">{"".join(tables)}</div>')
    parts.append(f"<details><summary>Original text</summary><p>{escape(e.text)}</p></details></section>")
    return "\n".join(parts)


def render_page(explanations: Sequence[Explanation], run_name: str, checkpoint: str,
                title: Optional[str] = None) -> str:
    """The whole page as a string; `run_name` and `checkpoint` (e.g. model-best.pt) label it."""
    labels = explanations[0].labels if explanations else ("negative", "positive")
    two = len(labels) == 2
    title = title or f"imdb-rnn explain: {run_name}"
    away, towards = (f"towards {labels[0]}", f"towards {labels[1]}") if two else \
        ("away from the predicted class", "towards the predicted class")
    legend = (f'<div class="legend"><span>{escape(away)}</span><span class="bar"></span>'
              f"<span>{escape(towards)}</span>"
              '<span class="cut">grey italic: not read by the RNN (cut by max_len)</span>'
              '<span class="unk">dotted: unknown word</span></div>')
    intro = (f'<p class="meta">Run {escape(run_name)}, checkpoint {escape(checkpoint)}. The heading gives the run\'s '
             "final prediction (all branches, stacked when the run has stacking weights), as "
             "<code>imdb-rnn predict</code> does. Token shades: integrated gradients (Sundararajan et al. 2017) "
             "of the RNN branch's margin ("
             + (f"logit of {escape(labels[1])} minus logit of {escape(labels[0])}" if two else
                "the predicted class's logit minus the mean of the other classes' logits")
             + ") from an all-padding baseline, scaled per review "
             "to its strongest token; hover a token for its value. The tables give the linear branches' exact "
             "per-n-gram shares of their margins.</p>")
    body = "\n".join(_review(i, e) for i, e in enumerate(explanations, 1))
    return (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>{escape(title)}</title>'
            f"<style>{CSS}</style></head>\n<body><h1>{escape(title)}</h1>{intro}{legend}\n{body}\n</body></html>\n")


def write_page(path: Path, html: str) -> Path:
    """Write the page atomically (a temporary file renamed onto `path`); raises UserError on failure."""
    write_text(path, html)
    return path
