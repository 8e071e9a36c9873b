from verticalize.cli import main

main()
