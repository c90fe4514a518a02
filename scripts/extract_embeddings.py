"""`hbehavemae embed` from a source checkout; see `keras_hbehavemae.cli.embed`."""

from keras_hbehavemae.cli.embed import command

if __name__ == "__main__":
    command()
