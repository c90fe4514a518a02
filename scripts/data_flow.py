"""`hbehavemae data-flow` from a source checkout; see `keras_hbehavemae.cli.data_flow`."""

from keras_hbehavemae.cli.data_flow import command

if __name__ == "__main__":
    command()
