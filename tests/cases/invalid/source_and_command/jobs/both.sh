echo both
