/* version.h - the one place the release version is written (the Makefile's `make deb`
 * and debian/changelog check read it from here). */
#ifndef STICKYD_VERSION_H
#define STICKYD_VERSION_H

#define STICKYD_VERSION "0.1.0"

#endif
