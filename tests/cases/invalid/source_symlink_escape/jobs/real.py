print("a symlink to me stays inside the repository")
