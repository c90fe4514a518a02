"""`hbehavemae export` from a source checkout; see `keras_hbehavemae.cli.export`."""

from keras_hbehavemae.cli.export import command

if __name__ == "__main__":
    command()
