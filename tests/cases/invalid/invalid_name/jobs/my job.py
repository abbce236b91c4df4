print("my job")
