"""The explain stage: per-token attributions of a run's prediction, and an HTML page showing them.

attributions.py computes them (integrated gradients for the RNN branch, exact linear
contributions for the n-gram bag and NBSVM branches), review.py turns raw reviews into them
through the run's own pipeline, html.py renders the page.
"""
