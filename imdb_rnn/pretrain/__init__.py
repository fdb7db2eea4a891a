"""Language-model pretraining on the unlabelled reviews (`imdb-rnn pretrain`), with truncated BPTT."""
