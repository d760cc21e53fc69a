/* addr.c - placeholder, being written */
#include "addr.h"
