"""The input side: walking a folder, deciding what is coded and what is kept byte-exact, image I/O."""
