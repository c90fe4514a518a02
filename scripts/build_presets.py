"""Writes the built-in architecture presets of the three published configurations.

Each preset folder (`presets/<name>/`) holds the backbone `config.json`, the pretrainer
`task.json`, `metadata.json` and a model card. It has no weights: the published weights
are the authors' checkpoints, which `scripts/convert_checkpoint.py` converts (the card of
each preset gives the command).

Usage:
    python scripts/build_presets.py            # rewrites presets/hbehavemae_{shot7m2,...}
"""

import pathlib

from absl import app, flags

FLAGS = flags.FLAGS
flags.DEFINE_string("output_dir", str(pathlib.Path(__file__).resolve().parents[1] / "presets"),
                    "Folder that receives one sub-folder per preset.")

PRESETS = {
    "hbehavemae_shot7m2": ("shot7m2", "Shot7M2 basketball (1 player, 24 joints × xyz), "
                           "400-frame windows"),
    "hbehavemae_mabe22_mice": ("mabe22", "MABe22 mouse triplets (3 mice × 12 keypoints × xy), "
                               "900-frame windows"),
    "hbehavemae_hbabel": ("hbabel", "hBABEL human motion (25 joints × xyz), 450-frame windows"),
}


def model_card(name: str, description: str, config, geometry) -> str:
    levels = ", ".join(f"L{level.stage} {level.grid} × {level.out_dim}"
                       for level in geometry.levels)
    return f"""# {name}

hBehaveMAE, published architecture: {description}.

- input `[batch, {", ".join(map(str, config.input_size))}]` (frames, individuals, features)
- per-level embeddings (unmasked encoder): {levels}
- {geometry.parameter_counts["encoder"]:,} encoder parameters,
  {geometry.parameter_counts["total"]:,} with fusion heads and decoder
- pretraining: decoding `{config.decoding_strategy}`, norm_loss {config.norm_loss},
  mask ratio {config.mask_ratio} (keeps {geometry.num_kept_units} of
  {geometry.num_mask_units} mask units), pred_stride {geometry.pred_stride}

This preset holds the architecture only. To use the published weights, convert the
authors' checkpoint (read without torch; no pickle code is executed):

```bash
python scripts/convert_checkpoint.py --checkpoint <published checkpoint>.pth \\
    --output presets/{name}_weights
```

then `HBehaveMAEBackbone.from_preset("presets/{name}_weights")`. Without weights,
`HBehaveMAE.from_preset("{name}")` builds the published architecture for training from
scratch.
"""


def main(argv):
    del argv
    from keras_hbehavemae import HBehaveMAE, HBehaveMAEBackbone
    from keras_hbehavemae.presets import save_to_preset
    from keras_hbehavemae.report import published_configuration

    for name, (configuration, description) in PRESETS.items():
        config = published_configuration(configuration)
        model = HBehaveMAE(HBehaveMAEBackbone(**config.encoder_kwargs()),
                           **config.pretrainer_kwargs())
        card = model_card(name, description, config, model.geometry)
        save_to_preset(model, pathlib.Path(FLAGS.output_dir) / name, include_weights=False,
                       metadata={"description": description, "weights": "none (architecture "
                                 "only; convert the published checkpoint)"},
                       model_card=card)
        print(f"wrote {name}")


if __name__ == "__main__":
    app.run(main)
