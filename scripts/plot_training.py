"""`hbehavemae plot-training` from a source checkout; see `keras_hbehavemae.cli.plot_training`."""

from keras_hbehavemae.cli.plot_training import command

if __name__ == "__main__":
    command()
