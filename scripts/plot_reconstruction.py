"""`hbehavemae plot-reconstruction` from a source checkout.

See `keras_hbehavemae.cli.plot_reconstruction`.
"""

from keras_hbehavemae.cli.plot_reconstruction import command

if __name__ == "__main__":
    command()
