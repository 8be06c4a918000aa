"""Moved: the offline fit of latent models is ``compressnet fit-entropy`` now
(:mod:`compressnet.train.fit_entropy`); it trains, so it lives above the coder."""

import sys

if __name__ == "__main__":
    sys.exit("compressnet.entropy.fit moved: run `compressnet fit-entropy WEIGHTS PHOTOS/ -o OUT` "
             "(same arguments)")
