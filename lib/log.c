/* log.c - placeholder, being written */
#include "log.h"
