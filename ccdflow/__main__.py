from ccdflow.cli import main

main()
