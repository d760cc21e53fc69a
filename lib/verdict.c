/* verdict.c - placeholder, being written */
#include "verdict.h"
