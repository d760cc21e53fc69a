/* policy.c - placeholder, being written */
#include "policy.h"
