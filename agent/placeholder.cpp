// agent library
