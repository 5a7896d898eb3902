from blurlatent.cli import main

main()
