/* msgfile.c - placeholder, being written */
#include "msgfile.h"
