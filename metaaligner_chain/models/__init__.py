"""Model files: find them (the built-in default), cache and merge derived copies, and read or
write what a model says about itself (prompt format, objectives). `engine.load_engine` turns a
runnable's model settings into a loaded backend; nothing heavy is imported here.
"""
