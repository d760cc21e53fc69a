/* session.c - placeholder, being written */
#include "session.h"
