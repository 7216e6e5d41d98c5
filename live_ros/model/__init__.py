"""The LIVE model core: frames, encoders, sequence format, model, presets."""
