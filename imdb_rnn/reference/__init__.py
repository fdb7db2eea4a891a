"""What `torch.nn.RNN` computes, written out in NumPy for reading (forward and backward)."""

from imdb_rnn.reference.rnn import RNN, RNNCell, TimeRNN

__all__ = ["RNN", "RNNCell", "TimeRNN"]
