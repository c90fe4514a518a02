"""`hbehavemae convert` from a source checkout; see `keras_hbehavemae.cli.convert`."""

from keras_hbehavemae.cli.convert import command

if __name__ == "__main__":
    command()
