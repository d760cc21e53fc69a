#ifndef AG_MSGFILE_H
#define AG_MSGFILE_H
#endif
