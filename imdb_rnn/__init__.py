"""imdb-rnn: recurrent networks for IMDB sentiment, from the classic recipe to a strong baseline."""

__version__ = "0.4.0"
