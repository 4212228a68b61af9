// abup-image library
