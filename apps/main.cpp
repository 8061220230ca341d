// The shipped `ctfgen` program (apps/ctfgen/cli_main.cpp has the logic).
#include "command.h"

int main(int argc, char** argv) { return ctfgen::cli::run_main(argc, argv); }
