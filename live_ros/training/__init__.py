"""Training a LIVE model: LoRA + connector on the streaming EOS objective (VideoLLM-online,
paper section 3.3), the ``live-ros train`` verb's implementation.

| module | what |
|---|---|
| ``config.py`` | the YAML config, ``key=value`` overrides, checks (``TrainConfig``, ``load_config``) |
| ``data.py`` | streams drawn per epoch (questions, augmentation), encoded and cut (``StreamDataset``), step layout |
| ``augment.py`` | the release's augmentation: wrong / empty turn then correction, delay, drop |
| ``model_setup.py`` | the run's ``LiveConfig`` (the preset's over the config), base LLM, LoRA + connector |
| ``state.py`` | resumable checkpoints, RNG state, the final checkpoint |
| ``plots.py`` | the loss curve |
| ``loop.py`` | ``train()``: the run, top to bottom |
"""
