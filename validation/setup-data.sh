#!/usr/bin/env bash
# Installs the data sets the file-based run configs use (nothing is downloaded at run time).
# Fashion-MNIST: Debian's dataset-fashion-mnist puts the IDX files in /usr/share/datasets/fashion-mnist.
set -euo pipefail
if [ ! -e /usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz ]; then
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update
  $SUDO apt-get install -y dataset-fashion-mnist
fi
ls -l /usr/share/datasets/fashion-mnist
