/* status.c - placeholder, being written */
#include "status.h"
