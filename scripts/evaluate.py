"""`hbehavemae evaluate` from a source checkout; see `keras_hbehavemae.cli.evaluate`."""

from keras_hbehavemae.cli.evaluate import command

if __name__ == "__main__":
    command()
