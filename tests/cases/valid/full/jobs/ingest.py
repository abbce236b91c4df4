import sys

print("ingest", sys.argv[1:])
