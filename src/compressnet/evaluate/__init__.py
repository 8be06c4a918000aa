"""Evaluation: rate, distortion and timing over a folder of images."""
