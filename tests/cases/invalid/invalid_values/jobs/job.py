print("runs on spark")
