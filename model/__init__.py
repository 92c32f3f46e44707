"""behavior-stream's model layer: event schema, data, sequence model, training and evaluation.

Pure PyTorch and NumPy; nothing here imports Kafka or Faust.
"""
