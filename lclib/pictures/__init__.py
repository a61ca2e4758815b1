"""One picture per chapter, each drawn from lclib's own data structures: `<topic>_picture()`."""
