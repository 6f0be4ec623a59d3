# not an .arch file
