"""Looking at a network without training it: the best-practice advisor and training compute."""
