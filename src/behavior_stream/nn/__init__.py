"""The GRU/LSTM sequence model: config, features, network (`step` == `forward`), checkpoints."""
