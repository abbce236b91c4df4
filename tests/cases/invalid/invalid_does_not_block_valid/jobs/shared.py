import sys

print("shared", sys.argv[1:])
