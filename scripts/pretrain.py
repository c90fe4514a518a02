"""`hbehavemae pretrain` from a source checkout; see `keras_hbehavemae.cli.pretrain`."""

from keras_hbehavemae.cli.pretrain import command

if __name__ == "__main__":
    command()
