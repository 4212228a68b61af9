#include "partitions/gpt.hpp"
