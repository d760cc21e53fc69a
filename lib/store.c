/* store.c - placeholder, being written */
#include "store.h"
